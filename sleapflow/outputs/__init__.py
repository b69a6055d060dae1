"""Outputs on disk: naming, guarded atomic files, the journal, streamed ``.slp`` writing,
provenance, exports and renders."""

__all__ = ()
