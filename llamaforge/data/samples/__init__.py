"""Small, realistic raw dumps in each source's real format, written on demand.

They let a newcomer try ``llamaforge data build`` without downloading
terabytes, and give the tests and ``benchmarks/data_throughput.py`` inputs
with known good documents, documents each filter must drop, and bad input.
"""
