"""The model-version format shared by the trainer (writer) and the server (reader).

Importing this package needs no TensorFlow: the server image and small tools can read a version's
files without it. Modules that build a format (the LiteRT converters) import TensorFlow when called;
`model_format.imaging`, the decoding ops of the contract, imports it on import.
"""
