"""Talking heads: speech, audio, visemes, mouth shapes, the AT-net at run time, the talking head and video."""
