"""Readers of the downstream benchmarks' published file formats.

Each reader returns plain examples and counts bad records in a :class:`kgclip.skips.Skips`
(``file:record: reason``); a file that cannot be used at all is a :class:`kgclip.errors.KgclipError`.
"""
