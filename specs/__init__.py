"""The shipped specs, installed as package data (`archcompiler.specs`)."""
