"""``track``'s NWB subject and session options (``--nwb_*``), and the metadata they make."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Annotated

from sleapflow.options.help import opt
from sleapflow.outputs.nwb import NO_METADATA, NwbMetadata, load_nwb_metadata

__all__ = ("NwbOptions",)


@dataclass(frozen=True)
class NwbOptions:
    """What ``--output_format nwb`` records about the animal and the session. Each option
    overrides the same key of ``--nwb_metadata``'s file."""

    nwb_metadata: Annotated[str | None, opt("nwb_metadata")] = None
    nwb_subject_id: Annotated[str | None, opt("nwb_subject_id")] = None
    nwb_species: Annotated[str | None, opt("nwb_species")] = None
    nwb_sex: Annotated[str | None, opt("nwb_sex")] = None
    nwb_age: Annotated[str | None, opt("nwb_age")] = None
    nwb_session_description: Annotated[str | None, opt("nwb_session_description")] = None
    nwb_session_start_time: Annotated[str | None, opt("nwb_session_start_time")] = None
    nwb_experimenter: Annotated[tuple[str, ...], opt("nwb_experimenter")] = ()
    nwb_lab: Annotated[str | None, opt("nwb_lab")] = None
    nwb_institution: Annotated[str | None, opt("nwb_institution")] = None
    nwb_frame_rate: Annotated[float | None, opt("nwb_frame_rate")] = None

    def metadata(self) -> NwbMetadata:
        """The file's values (if any) with the options given on the command line over them;
        a bad value or an unknown key in the file is a usage error, raised before any model
        loads."""
        base = load_nwb_metadata(self.nwb_metadata) if self.nwb_metadata else NO_METADATA
        given = {f.name.removeprefix("nwb_"): getattr(self, f.name) for f in fields(self)
                 if f.name != "nwb_metadata" and getattr(self, f.name) not in (None, ())}
        return base.merged(NwbMetadata(**given)) if given else base
