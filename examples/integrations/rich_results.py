"""Images, tables, figures and an artifact from code; see them on the experiment page.

    studio run rich_results.py          # or: python rich_results.py
"""
import matplotlib
import numpy as np
import pandas as pd

import studio

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

studio.init(project="rich-results")  # joins the run under `studio run`; starts one otherwise
rng = np.random.default_rng(0)
losses = []
for epoch in range(5):
    loss = 1.0 / (epoch + 1)
    losses.append(loss)
    studio.log(epoch, loss=loss)
    # a 32x32 "sample" that sharpens as training goes on
    yy, xx = np.mgrid[0:32, 0:32]
    blob = np.exp(-((xx - 16) ** 2 + (yy - 16) ** 2) / (2 * (12 - 2 * epoch) ** 2))
    studio.log_image("samples", np.stack([blob, blob * 0.5, 1 - blob], axis=-1), step=epoch)

fig, ax = plt.subplots(figsize=(4, 3))
ax.plot(losses)
ax.set_xlabel("epoch")
ax.set_ylabel("loss")
studio.log_figure("loss-curve", fig)
studio.log_table("predictions", pd.DataFrame({"id": range(5), "label": list("abcab"), "p": rng.random(5).round(3)}))
np.save("weights.npy", rng.normal(size=(4, 4)))
studio.save("weights.npy", "weights")
print("done")
