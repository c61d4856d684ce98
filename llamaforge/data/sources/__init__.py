"""The seven pretraining sources of paper Table 1, each behind the :class:`Source` contract."""

from llamaforge.data.sources.base import Document, FilterReport, Source, config_from_table

__all__ = ["Document", "FilterReport", "Source", "config_from_table"]
