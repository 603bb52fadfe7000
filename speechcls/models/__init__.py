"""Networks: each takes log-mels (batch, 1, n_mels, frames) and returns class scores (batch, num_classes)."""
