"""Using a trained model: predict your images, export it (ONNX, TorchScript), serve it over HTTP."""
