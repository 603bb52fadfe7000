"""Data: Kaggle-layout tables, waveform datasets, the data module and the built-in synthetic set."""
