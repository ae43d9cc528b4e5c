"""eeg2image: decode what a person saw from EEG (THINGS-EEG2 retrieval and reconstruction)."""

__version__ = "0.1.0"
