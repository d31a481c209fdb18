"""Publishing: dataset and model cards, staged repositories, uploads to the Hugging Face Hub.

Built on the public API (scored datasets and their provenance); never imported by it.
"""
