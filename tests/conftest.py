# The hypothesis profiles ("ci" when CI is set, "dev" otherwise, HYPOTHESIS_PROFILE to choose)
# and the prng_key, float64 and compile_counter fixtures come from toylab's pytest plugin
# (toylab/testing/plugin.py, registered by entry point).
