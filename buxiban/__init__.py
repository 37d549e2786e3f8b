"""buxiban: turn a general chat model into your company's specialist, locally."""

__version__ = "0.1.0"
