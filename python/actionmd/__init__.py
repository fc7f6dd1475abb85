"""actionmd: long-time-step molecular dynamics from a learned mechanical action."""
__version__ = "0.1.0"
