"""Using a trained model: chat sessions now; the OpenAI-compatible server arrives with the serving issue."""
