"""Encoders: model resolution, activation extraction with its cache, fine-tuning."""
