"""Options and configs: the user's options, the frozen configs derived from them, frame ranges and
tracker options. No torch."""

__all__ = ()
