"""Networks of the generative models, in Keras 3 operations only (any Keras backend)."""
