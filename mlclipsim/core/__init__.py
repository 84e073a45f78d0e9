"""The ground floor: helpers every other package may import, importing no other mlclipsim package.

- :mod:`~mlclipsim.core.images`: the one image loader and writer of the library;
- :mod:`~mlclipsim.core.weights`: where pretrained weight files are found (local paths, environment
  variables, offline packages) and the errors that say what to install.
"""
