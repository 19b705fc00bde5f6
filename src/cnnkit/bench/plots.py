"""The scaling curves as a PNG (matplotlib, optional)."""

from __future__ import annotations


def plot_scaling(curves: dict[str, list[dict]], path: str) -> bool:
    """Three panels (batch size, channel multiplier, image size) of training images/s; False without matplotlib."""
    from cnnkit.serialize import atomic_write_bytes
    from cnnkit.train.plots import have_matplotlib

    if not have_matplotlib():
        return False
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = {"batch": ("BASE training vs batch size", "batch size", True),
              "multiplier": ("SK-s training vs channel multiplier s (batch 100)", "s", False),
              "image_size": ("VGG-style stack training vs image size", "image side (px)", True)}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, (kind, (title, xlabel, logx)) in zip(axes, titles.items()):
        pts = curves.get(kind, [])
        xs = [p["x"] for p in pts]
        for key, style in (("cnnkit", "-o"), ("torch", "-s")):
            if pts and key in pts[0]:
                ax.plot(xs, [p[key] for p in pts], style, label=key if key == "cnnkit" else "PyTorch (best layout)")
        ax.set(title=title, xlabel=xlabel, ylabel="images/s")
        if logx:
            ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return True
