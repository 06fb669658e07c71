"""Draw docs/img/convolution.svg: the worked example of docs/convolutions.md, forward and backward.

    python examples/draw_convolution.py            # writes docs/img/convolution.svg

Top row, forward: the 3x3 input, the 2x2 kernel, the 2x2 output, with the window of out[0, 0]
marked. Bottom row, backward: grad_out padded with zeros, the kernel flipped, and d loss/d x,
their full convolution, with the window that gives d x[0, 0] marked. Every number is computed
here by the library, so the picture cannot disagree with the code.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinygrad_mnist import Tensor
from tinygrad_mnist import functional as F

OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "img" / "convolution.svg"
CELL = 34  # pixels per grid cell
HIGHLIGHT = "#f4c542"


def grid(left, top, values, title, marked=(), faded=False):
    """SVG of a grid of numbers at (left, top), cells in `marked` shaded, a title above."""
    parts = [f'<text x="{left}" y="{top - 8}" font-size="13">{title}</text>']
    for (row, column), value in np.ndenumerate(values):
        x, y = left + column * CELL, top + row * CELL
        fill = HIGHLIGHT if (row, column) in marked else ("#eeeeee" if faded and value == 0 else "white")
        parts.append(f'<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="{fill}" stroke="#333"/>')
        parts.append(f'<text x="{x + CELL / 2}" y="{y + CELL / 2 + 5}" font-size="14" text-anchor="middle">{value:g}</text>')
    return parts


def symbol(left, top, text):
    return [f'<text x="{left}" y="{top}" font-size="20" text-anchor="middle">{text}</text>']


def main():
    x = Tensor(np.arange(1.0, 10.0).reshape(1, 1, 3, 3), requires_grad=True)
    weight = Tensor(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), requires_grad=True)
    out = F.conv2d(x, weight)
    grad_out = np.array([[[[1.0, -1.0], [2.0, 0.0]]]])
    out.backward(grad_out)

    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="620" height="355" font-family="sans-serif">',
             '<rect width="100%" height="100%" fill="white"/>',
             '<text x="10" y="22" font-size="15" font-weight="bold">forward: out = x ⋆ w (slide w over x)</text>']
    top = 60
    parts += grid(20, top, x.data[0, 0], "x (3x3)", marked={(0, 0), (0, 1), (1, 0), (1, 1)})
    parts += symbol(150, top + 55, "⋆")
    parts += grid(180, top + 17, weight.data[0, 0], "w (2x2)")
    parts += symbol(275, top + 55, "=")
    parts += grid(300, top + 17, out.data[0, 0], "out (2x2)", marked={(0, 0)})
    parts.append(f'<text x="390" y="{top + 40}" font-size="12">out[0,0] = 1·1 + 2·2</text>')
    parts.append(f'<text x="390" y="{top + 56}" font-size="12">  + 4·3 + 5·4 = 37</text>')

    top = 205
    parts.append('<text x="10" y="178" font-size="15" font-weight="bold">backward: d x = (grad_out padded) ⋆ (w flipped)</text>')
    padded = np.pad(grad_out[0, 0], 1)
    parts += grid(20, top, padded, "grad_out, padded", marked={(0, 0), (0, 1), (1, 0), (1, 1)}, faded=True)
    parts += symbol(180, top + 72, "⋆")
    parts += grid(205, top + 34, weight.data[0, 0, ::-1, ::-1], "w flipped")
    parts += symbol(300, top + 72, "=")
    parts += grid(325, top + 17, x.grad[0, 0], "d loss / d x", marked={(0, 0)})
    parts.append(f'<text x="435" y="{top + 40}" font-size="12">dx[0,0] = 1·1 = 1</text>')
    parts.append(f'<text x="435" y="{top + 56}" font-size="12">(only w[0,0] read x[0,0])</text>')
    parts.append("</svg>")
    OUTPUT.write_text("\n".join(parts) + "\n", encoding="utf-8")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
