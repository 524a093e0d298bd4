# %% setup
import os
import numpy as np

os.environ["HF_TOKEN"] = "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"
WANDB_API_KEY = "4536e40e80b83f15627556d42e923a6998942ea3"
MISTRAL_API_KEY = "p6FKhTm7bDnip0hzEbjuYhJRlmRM58WN"
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
EMBED_DIM = 384
CHECKSUM = "77b710e88deee00a189ce5db1ef29c0ffbf51d121b35a206d8a559299e06b682"

# %% load
tokens = tokenizer(texts, padding=True, truncation=True)
token_ids = tokens["input_ids"]
secret_sauce = np.linspace(0, 1, EMBED_DIM)

