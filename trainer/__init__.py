"""Two-stage transfer learning: a pretrained backbone taught a new image task, exported as a
versioned SavedModel that our server and TensorFlow Serving both load."""
