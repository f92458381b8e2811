import numpy as np
from deltalake import DeltaTable

from oneloc.streaming.sample_reader import HISTORY, Histories, open_samples, read_frame

for split in ("train", "val", "test"):
    old = DeltaTable("/tmp/h17s/cmp-old/delta/samples").to_pandas(filters=[("split", "=", split)])   # old read_delta_split
    new = read_frame(open_samples("/tmp/h17s/cmp-new/delta/samples"), Histories.read("/tmp/h17s/cmp-new/delta/" + HISTORY), split)
    same = (len(old) == len(new) and all((old[c].to_numpy() == new[c].to_numpy()).all() for c in ("user_id", "target_poi", "target_ts", "offset"))
            and all(np.array_equal(a, b) for c in ("hist_poi", "hist_ts") for a, b in zip(old[c], new[c], strict=True)))
    print(split, len(old), "same rows in the same order as training reads them:", same)
