"""Command-line entry points (`ddrm-fast`, `python -m ddrm_fast`)."""
