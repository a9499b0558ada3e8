//! A tiny rasteriser: shapes in an object's own coordinates, painted with hard edges onto
//! an RGB canvas that records which pixels belong to the object (the mask).
//!
//! Hard edges (no anti-aliasing) are deliberate: every pixel is either the object's or
//! not, so the mask and the box derived from it are exact.

/// An RGB colour with channels in `[0, 255]`.
pub type Colour = [f32; 3];

/// Where an object sits in the image: its own unit square `[0, 1]²` (x right, y down)
/// maps to the pixel square `[x0, x0 + side) × [y0, y0 + side)`, mirrored left–right when
/// `flip` is set (objects face right in their own coordinates).
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    /// Left pixel edge of the unit square.
    pub x0: f32,
    /// Top pixel edge of the unit square.
    pub y0: f32,
    /// Side of the unit square in pixels.
    pub side: f32,
    /// Mirror left–right.
    pub flip: bool,
}

impl Frame {
    /// The frame of the whole `size × size` image (for backgrounds and clutter).
    pub fn image(size: u32) -> Frame {
        Frame {
            x0: 0.0,
            y0: 0.0,
            side: size as f32,
            flip: false,
        }
    }

    fn to_local(self, px: f32, py: f32) -> (f32, f32) {
        let u = (px - self.x0) / self.side;
        let v = (py - self.y0) / self.side;
        (if self.flip { 1.0 - u } else { u }, v)
    }

    fn to_pixel_x(self, u: f32) -> f32 {
        let u = if self.flip { 1.0 - u } else { u };
        self.x0 + u * self.side
    }
}

/// A filled shape in local coordinates.
#[derive(Clone, Debug)]
pub enum Shape {
    /// An ellipse with centre, radii and rotation (radians, clockwise on screen).
    Ellipse {
        /// Centre x.
        cx: f32,
        /// Centre y.
        cy: f32,
        /// Radius along its own x axis.
        rx: f32,
        /// Radius along its own y axis.
        ry: f32,
        /// Rotation.
        angle: f32,
    },
    /// An axis-aligned rectangle `[x0, x1) × [y0, y1)`.
    Rect(f32, f32, f32, f32),
    /// A polygon (even–odd rule), vertices in order.
    Polygon(Vec<(f32, f32)>),
    /// A thick segment with round ends: from, to, radius.
    Capsule((f32, f32), (f32, f32), f32),
    /// A ring: centre, outer radius, inner radius.
    Ring((f32, f32), f32, f32),
}

/// A circle (an unrotated ellipse with equal radii).
pub fn circle(cx: f32, cy: f32, r: f32) -> Shape {
    Shape::Ellipse {
        cx,
        cy,
        rx: r,
        ry: r,
        angle: 0.0,
    }
}

/// An ellipse without rotation.
pub fn ellipse(cx: f32, cy: f32, rx: f32, ry: f32) -> Shape {
    Shape::Ellipse {
        cx,
        cy,
        rx,
        ry,
        angle: 0.0,
    }
}

impl Shape {
    /// Local bounds `(u0, v0, u1, v1)` containing the shape.
    fn bounds(&self) -> (f32, f32, f32, f32) {
        match self {
            Shape::Ellipse { cx, cy, rx, ry, .. } => {
                let r = rx.max(*ry);
                (cx - r, cy - r, cx + r, cy + r)
            }
            Shape::Rect(x0, y0, x1, y1) => (*x0, *y0, *x1, *y1),
            Shape::Polygon(points) => points.iter().fold(
                (f32::MAX, f32::MAX, f32::MIN, f32::MIN),
                |(a, b, c, d), &(x, y)| (a.min(x), b.min(y), c.max(x), d.max(y)),
            ),
            Shape::Capsule((ax, ay), (bx, by), r) => (
                ax.min(*bx) - r,
                ay.min(*by) - r,
                ax.max(*bx) + r,
                ay.max(*by) + r,
            ),
            Shape::Ring((cx, cy), r, _) => (cx - r, cy - r, cx + r, cy + r),
        }
    }

    /// Whether local point `(u, v)` is inside.
    pub fn contains(&self, u: f32, v: f32) -> bool {
        match self {
            Shape::Ellipse {
                cx,
                cy,
                rx,
                ry,
                angle,
            } => {
                let (dx, dy) = (u - cx, v - cy);
                let (s, c) = angle.sin_cos();
                let (x, y) = (dx * c + dy * s, -dx * s + dy * c);
                (x / rx).powi(2) + (y / ry).powi(2) <= 1.0
            }
            Shape::Rect(x0, y0, x1, y1) => u >= *x0 && u < *x1 && v >= *y0 && v < *y1,
            Shape::Polygon(points) => {
                let mut inside = false;
                let mut j = points.len() - 1;
                for i in 0..points.len() {
                    let (xi, yi) = points[i];
                    let (xj, yj) = points[j];
                    if (yi > v) != (yj > v) && u < (xj - xi) * (v - yi) / (yj - yi) + xi {
                        inside = !inside;
                    }
                    j = i;
                }
                inside
            }
            Shape::Capsule((ax, ay), (bx, by), r) => {
                let (dx, dy) = (bx - ax, by - ay);
                let len2 = dx * dx + dy * dy;
                let t = if len2 > 0.0 {
                    (((u - ax) * dx + (v - ay) * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (x, y) = (ax + t * dx - u, ay + t * dy - v);
                x * x + y * y <= r * r
            }
            Shape::Ring((cx, cy), outer, inner) => {
                let d2 = (u - cx).powi(2) + (v - cy).powi(2);
                d2 <= outer * outer && d2 >= inner * inner
            }
        }
    }
}

/// What a painted shape belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    /// Background and clutter: neither the object nor a distractor.
    Scene,
    /// The object: its pixels are the mask.
    Object,
    /// A distractor: recorded apart so tests can check it stays off the object.
    Distractor,
}

/// How a shape's pixels are coloured, given local coordinates.
#[derive(Clone, Copy, Debug)]
pub enum Paint {
    /// One colour.
    Solid(Colour),
    /// Fur: short dark and light strokes in random directions, one per cell of a grid in
    /// local coordinates (`cell` wide), laid out by `seed`.
    Fur {
        /// The fur's base colour.
        base: Colour,
        /// Grid cell size in local units.
        cell: f32,
        /// Seed of the strokes' layout.
        seed: u64,
    },
    /// Feathers: dark chevron bands `period` apart pointing along +x.
    Feathers {
        /// The feathers' base colour.
        base: Colour,
        /// Band period in local units.
        period: f32,
        /// Vertical centre of the chevrons.
        axis: f32,
    },
    /// Painted metal: lighter towards the top edge `top` over `height`.
    Metal {
        /// The paint's base colour.
        base: Colour,
        /// Top of the part.
        top: f32,
        /// Height of the part.
        height: f32,
    },
}

/// Multiplies a colour's channels by `f`, clamped.
pub fn shade(c: Colour, f: f32) -> Colour {
    c.map(|v| (v * f).clamp(0.0, 255.0))
}

fn cell_hash(seed: u64, i: i32, j: i32) -> u64 {
    crate::seed::derive(seed, &[i as u32 as u64, j as u32 as u64])
}

impl Paint {
    fn colour(&self, u: f32, v: f32) -> Colour {
        match *self {
            Paint::Solid(c) => c,
            Paint::Fur { base, cell, seed } => {
                let (gu, gv) = (u / cell, v / cell);
                let (i, j) = (gu.floor() as i32, gv.floor() as i32);
                let h = cell_hash(seed, i, j);
                // A stroke through the cell's centre in a random direction, mostly slanted
                // the same way (fur lies down), dark or light.
                let angle = 0.6 + ((h & 0xFF) as f32 / 255.0 - 0.5) * 1.2;
                let (s, c) = angle.sin_cos();
                let (du, dv) = (gu - i as f32 - 0.5, gv - j as f32 - 0.5);
                let across = (-du * s + dv * c).abs();
                let along = (du * c + dv * s).abs();
                let light = ((h >> 8) & 0xFF) as f32 / 255.0;
                if across < 0.2 && along < 0.45 {
                    if (h >> 16) & 3 == 0 {
                        shade(base, 1.35)
                    } else {
                        shade(base, 0.55)
                    }
                } else {
                    shade(base, 0.92 + 0.16 * light)
                }
            }
            Paint::Feathers { base, period, axis } => {
                let phase = ((u + (v - axis).abs() * 0.9) / period).rem_euclid(1.0);
                if phase < 0.3 {
                    shade(base, 0.55)
                } else {
                    shade(base, 0.95 + 0.2 * phase)
                }
            }
            Paint::Metal { base, top, height } => {
                let t = ((v - top) / height.max(1e-6)).clamp(0.0, 1.0);
                shade(base, 1.2 - 0.35 * t)
            }
        }
    }
}

/// The image being drawn: colours, the object mask, and which named part each object
/// pixel shows.
pub struct Canvas {
    size: u32,
    rgb: Vec<Colour>,
    mask: Vec<bool>,
    distractor: Vec<bool>,
    /// Per pixel: 0, or 1 + the index in `names` of the part painted last there.
    part: Vec<u8>,
    names: Vec<&'static str>,
    current: u8,
}

impl Canvas {
    /// A black `size × size` canvas with an empty mask.
    pub fn new(size: u32) -> Canvas {
        let n = (size * size) as usize;
        Canvas {
            size,
            rgb: vec![[0.0; 3]; n],
            mask: vec![false; n],
            distractor: vec![false; n],
            part: vec![0; n],
            names: Vec::new(),
            current: 0,
        }
    }

    /// Names the part that the following object pixels belong to.
    pub fn label(&mut self, name: &'static str) {
        let index = match self.names.iter().position(|&n| n == name) {
            Some(index) => index,
            None => {
                self.names.push(name);
                self.names.len() - 1
            }
        };
        self.current = u8::try_from(index + 1).expect("under 255 parts per object");
    }

    /// How many pixels of each named part are visible (not painted over).
    pub fn part_pixels(&self) -> std::collections::BTreeMap<&'static str, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for &p in &self.part {
            if p > 0 {
                *counts.entry(self.names[p as usize - 1]).or_insert(0) += 1;
            }
        }
        counts
    }

    /// The side in pixels.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Sets every pixel to `f(x, y)` (background; not part of the object).
    pub fn fill_with(&mut self, mut f: impl FnMut(u32, u32) -> Colour) {
        for y in 0..self.size {
            for x in 0..self.size {
                self.rgb[(y * self.size + x) as usize] = f(x, y);
            }
        }
    }

    /// Pixel ranges (half-open) of the pixels whose centres may fall in `shape`.
    fn pixel_range(&self, frame: Frame, shape: &Shape) -> (u32, u32, u32, u32) {
        let (u0, v0, u1, v1) = shape.bounds();
        let (xa, xb) = (frame.to_pixel_x(u0), frame.to_pixel_x(u1));
        let (x0, x1) = (xa.min(xb), xa.max(xb));
        let (y0, y1) = (frame.y0 + v0 * frame.side, frame.y0 + v1 * frame.side);
        let clamp = |p: f32| p.clamp(0.0, self.size as f32);
        (
            clamp(x0.floor()) as u32,
            clamp(y0.floor()) as u32,
            clamp(x1.ceil() + 1.0) as u32,
            clamp(y1.ceil() + 1.0) as u32,
        )
    }

    /// Paints `shape` with `paint`, blended at `alpha` over what is there, as part of
    /// `layer` (an object is painted opaque).
    pub fn draw(&mut self, frame: Frame, shape: &Shape, paint: &Paint, alpha: f32, layer: Layer) {
        let (x0, y0, x1, y1) = self.pixel_range(frame, shape);
        for y in y0..y1 {
            for x in x0..x1 {
                let (u, v) = frame.to_local(x as f32 + 0.5, y as f32 + 0.5);
                if !shape.contains(u, v) {
                    continue;
                }
                let i = (y * self.size + x) as usize;
                let c = paint.colour(u, v);
                let old = self.rgb[i];
                self.rgb[i] = [0, 1, 2].map(|k| old[k] + alpha * (c[k] - old[k]));
                match layer {
                    Layer::Scene => {}
                    Layer::Object => {
                        debug_assert!(self.current > 0, "object pixels belong to a named part");
                        self.mask[i] = true;
                        self.part[i] = self.current;
                    }
                    Layer::Distractor => self.distractor[i] = true,
                }
            }
        }
    }

    /// Paints a part of the object (opaque, in the mask).
    pub fn part(&mut self, frame: Frame, shape: Shape, paint: Paint) {
        self.draw(frame, &shape, &paint, 1.0, Layer::Object);
    }

    /// Paints a solid-coloured part of the object.
    pub fn solid(&mut self, frame: Frame, shape: Shape, colour: Colour) {
        self.part(frame, shape, Paint::Solid(colour));
    }

    /// Whether a pixel of `shape` lies within `gap` pixels (in x and in y) of an object
    /// pixel; with `gap` 1 a shape that passes neither overlaps nor touches the object.
    pub fn near_object(&self, frame: Frame, shape: &Shape, gap: u32) -> bool {
        let (x0, y0, x1, y1) = self.pixel_range(frame, shape);
        for y in y0..y1 {
            for x in x0..x1 {
                let (u, v) = frame.to_local(x as f32 + 0.5, y as f32 + 0.5);
                if !shape.contains(u, v) {
                    continue;
                }
                let (ya, yb) = (y.saturating_sub(gap), (y + gap).min(self.size - 1));
                let (xa, xb) = (x.saturating_sub(gap), (x + gap).min(self.size - 1));
                for ny in ya..=yb {
                    for nx in xa..=xb {
                        if self.mask[(ny * self.size + nx) as usize] {
                            return true;
                        }
                    }
                }
            }
        }
        false
    }

    /// Adds per-pixel noise from `noise(i)` in `[-1, 1]` scaled by `amplitude`, to every
    /// pixel (sensor noise over object and background alike).
    pub fn add_noise(&mut self, amplitude: f32, mut noise: impl FnMut() -> f32) {
        for pixel in &mut self.rgb {
            let n = noise() * amplitude;
            *pixel = pixel.map(|v| (v + n).clamp(0.0, 255.0));
        }
    }

    /// The RGB bytes, row-major.
    pub fn rgb_bytes(&self) -> Vec<u8> {
        self.rgb
            .iter()
            .flat_map(|c| c.map(|v| v.round().clamp(0.0, 255.0) as u8))
            .collect()
    }

    /// The mask bytes (255 = object), row-major.
    pub fn mask_bytes(&self) -> Vec<u8> {
        self.mask.iter().map(|&m| if m { 255 } else { 0 }).collect()
    }

    /// The distractors' pixels (255 = distractor), row-major.
    pub fn distractor_bytes(&self) -> Vec<u8> {
        self.distractor
            .iter()
            .map(|&m| if m { 255 } else { 0 })
            .collect()
    }

    /// The mask's box, 0-based half-open `(xmin, ymin, xmax, ymax)`; `None` when empty.
    pub fn mask_box(&self) -> Option<(u32, u32, u32, u32)> {
        let mut found: Option<(u32, u32, u32, u32)> = None;
        for y in 0..self.size {
            for x in 0..self.size {
                if self.mask[(y * self.size + x) as usize] {
                    found = Some(match found {
                        None => (x, y, x + 1, y + 1),
                        Some((a, b, c, d)) => (a.min(x), b.min(y), c.max(x + 1), d.max(y + 1)),
                    });
                }
            }
        }
        found
    }
}
