"""The named studies behind the notebooks and `make reproduce` (logic only; figures in plots)."""
