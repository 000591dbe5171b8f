"""YAML presets shipped with mrgfast (package data): tiny, mrg-r1-iu-xray, mrg-r1-mimic-cxr."""
