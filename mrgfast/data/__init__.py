"""Datasets: the R2Gen annotation loader (IU X-Ray, MIMIC-CXR) and the synthetic chest-film generator."""
