"""The TensorFlow-free data layer: encoding, every input format, the HDF5 cache, the rows a
run trains on (singleton filter, split, target scaling) and the synthetic data set.

Nothing in this subpackage imports TensorFlow or Keras (a test checks it), so preparing
data and the data command lines start in well under a second. Data flows one way:
file -> readers -> cache -> training_data/splits -> (Keras side) dataset -> model.
"""
