"""The math of each model on one rank's data (numpy + kernels). No MPI here."""
