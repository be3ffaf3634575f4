"""How the files beside this script were written (TensorFlow 2.21.0, CPU; run once, not by
the tests, which read the files without TensorFlow): a TF1 ``Saver`` checkpoint
(``model.ckpt-3``, 305 variables so its index spans several table blocks) and a TF2 object
checkpoint (``tf2/ckpt``). Values are fixed so the tests can state them."""

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1
tf1.disable_eager_execution()
with tf1.Graph().as_default():
    tf1.get_variable("base_model/conv2d/kernel", initializer=np.arange(48, dtype=np.float32).reshape(2, 2, 3, 4))
    tf1.get_variable("global_step", initializer=np.int64(7))
    tf1.get_variable("x/double", initializer=np.linspace(0, 1, 5))
    tf1.get_variable("x/int32", initializer=np.array([[1, -2], [3, 4]], np.int32))
    tf1.get_variable("x/scalar", initializer=np.float32(2.5))
    for i in range(300):
        tf1.get_variable(f"many/a_rather_long_scope_name_to_fill_index_blocks/v{i:04d}", initializer=np.float32(i))
    saver = tf1.train.Saver()
    with tf1.Session() as s:
        s.run(tf1.global_variables_initializer())
        saver.save(s, "model.ckpt", global_step=3)

tf.compat.v1.enable_eager_execution()


class M(tf.Module):
    def __init__(self):
        self.w = tf.Variable(np.arange(6, dtype=np.float32).reshape(2, 3))
        self.b = tf.Variable(np.array([1.5, -1.0], np.float64))


tf.train.Checkpoint(model=M()).write("tf2/ckpt")
