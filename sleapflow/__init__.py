"""sleapflow: a fast, streaming inference engine for SLEAP / sleap-nn pose models."""
