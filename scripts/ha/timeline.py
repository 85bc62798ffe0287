"""What the HA run looked like: HAProxy's current sessions per replica, sampled four times
a second, with the scenarios' events marked — written as an SVG plot (no plotting library
needed) beside the figures."""
import threading
import time

from procs import REPLICAS, haproxy_command

COLOURS = {"r1": "#1f77b4", "r2": "#d62728", "r3": "#2ca02c"}


class Timeline:
    def __init__(self):
        self.start = time.monotonic()
        self.samples, self.events = [], []
        self.stop = threading.Event()

    def mark(self, label):
        self.events.append((time.monotonic() - self.start, label))

    def sample_from(self, stats_socket):
        def run():
            while not self.stop.wait(0.25):
                try:
                    rows = haproxy_command(stats_socket, "show stat").splitlines()
                except OSError:
                    continue
                header = rows[0].lstrip("# ").split(",")
                name, current = header.index("svname"), header.index("scur")
                counts = dict.fromkeys(REPLICAS, 0)
                for row in rows[1:]:
                    cells = row.split(",")
                    if len(cells) > current and cells[name] in counts:
                        counts[cells[name]] += int(cells[current] or 0)
                self.samples.append((time.monotonic() - self.start, counts))
        threading.Thread(target=run, daemon=True).start()

    def svg(self, path):
        self.stop.set()
        width, height, left, bottom = 1000, 360, 50, 40
        end = max([t for t, _ in self.samples] + [1])
        top = max([max(c.values()) for _, c in self.samples] + [1])
        x = lambda t: left + (width - left - 10) * t / end
        y = lambda v: height - bottom - (height - bottom - 20) * v / top
        parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11">',
                 '<rect width="100%" height="100%" fill="white"/>',
                 f'<text x="{left}" y="14">connections per replica at HAProxy (scur), by second of the run</text>',
                 f'<line x1="{left}" y1="{y(0)}" x2="{width - 10}" y2="{y(0)}" stroke="black"/>',
                 f'<line x1="{left}" y1="{y(0)}" x2="{left}" y2="20" stroke="black"/>',
                 f'<text x="4" y="{y(top) + 4}">{top}</text><text x="4" y="{y(0)}">0</text>']
        for second in range(0, int(end) + 1, 10):
            parts.append(f'<text x="{x(second) - 6}" y="{height - bottom + 14}">{second}</text>')
        for t, label in self.events:
            parts.append(f'<line x1="{x(t):.1f}" y1="20" x2="{x(t):.1f}" y2="{y(0)}" stroke="#999" stroke-dasharray="3,3"/>')
            parts.append(f'<text transform="translate({x(t) + 3:.1f},{y(0) - 4}) rotate(-90)" fill="#555">{label}</text>')
        for replica, colour in COLOURS.items():
            points = " ".join(f"{x(t):.1f},{y(c[replica]):.1f}" for t, c in self.samples)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
            index = list(COLOURS).index(replica)
            parts.append(f'<text x="{width - 60}" y="{30 + 14 * index}" fill="{colour}">{replica}</text>')
        parts.append("</svg>")
        with open(path, "w") as f:
            f.write("\n".join(parts))
