"""The report layer: configuration, result cache, the steps the notebooks call, verdicts, plots, the book runner."""
