"""murmur2 / partition_for (scalar) and partition_many (batch), both implementations."""

import numpy as np

from .common import IMPLS, impl


class Murmur2Scalar:
    params = (IMPLS,)
    param_names = ["impl"]

    def setup(self, name):
        self.core = impl(name)
        rng = np.random.default_rng(1)
        self.keys = [rng.bytes(16) for _ in range(1000)]

    def time_partition_for_16b_x1000(self, name):
        pf = self.core.partition_for
        for k in self.keys:
            pf(k, 8)

    def time_murmur2_16b_x1000(self, name):
        m = self.core.murmur2
        for k in self.keys:
            m(k)


class PartitionMany:
    # The pure twin only at the small size: a million keys through it takes seconds.
    params = ([(name, n) for name in IMPLS for n in ([10_000, 1_000_000] if name == "c" else [10_000])],)
    param_names = ["impl_n"]
    timeout = 120

    def setup(self, impl_n):
        name, n = impl_n
        self.core = impl(name)
        rng = np.random.default_rng(2)
        self.arr = np.frombuffer(rng.bytes(16 * n), dtype="S16")
        self.lst = self.arr.tolist()

    def time_partition_many_array(self, impl_n):
        self.core.partition_many(self.arr, 8)

    def time_partition_many_list(self, impl_n):
        self.core.partition_many(self.lst, 8)
