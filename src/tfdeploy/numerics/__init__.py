"""Bit-exact numerical helpers: glibc's libm functions and TF's Philox streams, in numpy."""
