"""Event construction and id generation, both implementations."""

from .common import IMPLS, impl


class EventConstruction:
    params = (IMPLS,)
    param_names = ["impl"]

    def setup(self, name):
        self.Event = impl(name).Event
        self.new_id = impl(name).new_id
        self.data = {"user": 1}

    def time_event_auto_id_and_timestamp_x1000(self, name):
        E, d = self.Event, self.data
        for _ in range(1000):
            E("user.created", d)

    def time_event_explicit_fields_x1000(self, name):
        E, d = self.Event, self.data
        for i in range(1000):
            E("user.created", d, id="fixed-id", timestamp=i, metadata=None)

    def time_event_id_read_x1000(self, name):
        E, d = self.Event, self.data
        for _ in range(1000):
            E("user.created", d).id

    def time_new_id_x1000(self, name):
        f = self.new_id
        for _ in range(1000):
            f()

    def peakmem_100k_events(self, name):
        E = self.Event
        return [E("t", i) for i in range(100_000)]
