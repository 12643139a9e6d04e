"""LiLM core: LIHKG links and fetcher, text handling, model backends and the reply service.

Nothing here imports the bots or the pipeline.
"""
