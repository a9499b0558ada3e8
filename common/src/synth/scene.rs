//! Backgrounds and clutter: what surrounds an object without being any class's part.
//!
//! Backgrounds are muted two-colour gradients in a random direction with soft blobs;
//! clutter is a few half-transparent distractors (rings, crosses, diamonds, zigzags,
//! rotated squares) in random colours. None of them reuses a class part: no filled dark
//! discs (wheels), no white discs with pupils (eyes), no pale-blue rectangles (windows),
//! no fur or feather texture. Clutter is drawn behind the object and is not in its mask.
//!
//! Distractors (`--distractors`) are opaque, object-sized line shapes — rings, plus and
//! X crosses, zigzags — drawn after the object where they do not touch it. Their colours
//! avoid every fixed part colour: no black or white (wheels, eyes, sails), no reds,
//! oranges or yellows (collar, funnel, beaks, legs, headlight), no sky or sea blues
//! (windows, waves).

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::canvas::{Canvas, Colour, Frame, Layer, Paint, Shape};

fn muted(rng: &mut ChaCha8Rng) -> Colour {
    let c: Colour = [0, 1, 2].map(|_| rng.random_range(30.0f32..230.0));
    let grey = (c[0] + c[1] + c[2]) / 3.0;
    // Halfway to grey: backgrounds are less saturated than the objects on them.
    c.map(|v| 0.5 * v + 0.5 * grey)
}

/// Paints the background gradient and its soft blobs.
pub fn background(canvas: &mut Canvas, rng: &mut ChaCha8Rng) {
    let (a, b) = (muted(rng), muted(rng));
    let angle = rng.random_range(0.0f32..std::f32::consts::TAU);
    let (s, c) = angle.sin_cos();
    let size = canvas.size() as f32;
    canvas.fill_with(|x, y| {
        let (u, v) = ((x as f32 + 0.5) / size - 0.5, (y as f32 + 0.5) / size - 0.5);
        let t = (u * c + v * s + 0.5).clamp(0.0, 1.0);
        [0, 1, 2].map(|k| a[k] + t * (b[k] - a[k]))
    });
    let whole = Frame::image(canvas.size());
    for _ in 0..rng.random_range(1..=3) {
        let blob = Shape::Ellipse {
            cx: rng.random_range(0.0f32..1.0),
            cy: rng.random_range(0.0f32..1.0),
            rx: rng.random_range(0.15f32..0.4),
            ry: rng.random_range(0.1f32..0.3),
            angle: rng.random_range(0.0f32..3.2),
        };
        canvas.draw(whole, &blob, &Paint::Solid(muted(rng)), 0.3, Layer::Scene);
    }
}

/// Paints 2–5 distractors.
pub fn clutter(canvas: &mut Canvas, rng: &mut ChaCha8Rng) {
    let whole = Frame::image(canvas.size());
    for _ in 0..rng.random_range(2..=5) {
        // Bright enough never to read as a black wheel.
        let colour: Colour = [0, 1, 2].map(|_| rng.random_range(60.0f32..235.0));
        let alpha = rng.random_range(0.45f32..0.8);
        let (x, y) = (rng.random_range(0.0f32..1.0), rng.random_range(0.0f32..1.0));
        let r = rng.random_range(0.05f32..0.13);
        let t = r * 0.25;
        let shapes: Vec<Shape> = match rng.random_range(0..5) {
            0 => vec![Shape::Ring((x, y), r, r * 0.7)],
            1 => vec![
                Shape::Capsule((x - r, y), (x + r, y), t),
                Shape::Capsule((x, y - r), (x, y + r), t),
            ],
            2 => vec![Shape::Polygon(vec![
                (x, y - r),
                (x + r * 0.7, y),
                (x, y + r),
                (x - r * 0.7, y),
            ])],
            3 => (0..3)
                .map(|k| {
                    let x0 = x - r + k as f32 * r * 0.7;
                    let up = if k % 2 == 0 { -r * 0.5 } else { r * 0.5 };
                    Shape::Capsule((x0, y + up), (x0 + r * 0.7, y - up), t * 0.8)
                })
                .collect(),
            _ => {
                let a = rng.random_range(0.0f32..1.5);
                vec![Shape::Polygon(
                    (0..4)
                        .map(|k| {
                            let th = a + k as f32 * std::f32::consts::FRAC_PI_2;
                            (x + r * th.cos(), y + r * th.sin())
                        })
                        .collect(),
                )]
            }
        };
        for shape in &shapes {
            canvas.draw(whole, shape, &Paint::Solid(colour), alpha, Layer::Scene);
        }
    }
}

/// Tries per distractor before giving up on it (the object leaves no room).
const DISTRACTOR_TRIES: usize = 40;

/// A distractor colour: hue in 70°–185° (greens, teals) or 250°–330° (violets, purples,
/// magentas), saturation 0.45–0.8, value 0.5–0.8 — never a part's colour (see the module
/// docs).
pub fn distractor_colour(rng: &mut ChaCha8Rng) -> Colour {
    let h = rng.random_range(0.0f32..195.0);
    let hue = if h < 115.0 { 70.0 + h } else { 135.0 + h };
    let s = rng.random_range(0.45f32..0.8);
    let v = rng.random_range(0.5f32..0.8);
    hsv(hue, s, v)
}

/// HSV (hue in degrees, saturation and value in `[0, 1]`) to RGB in `[0, 255]`.
fn hsv(hue: f32, s: f32, v: f32) -> Colour {
    let c = v * s;
    let h = hue.rem_euclid(360.0) / 60.0;
    let x = c * (1.0 - (h.rem_euclid(2.0) - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r, g, b].map(|k| (k + m) * 255.0)
}

/// The strokes of a distractor centred at `(x, y)` with radius `r` (image fractions).
fn distractor_shapes(rng: &mut ChaCha8Rng, x: f32, y: f32, r: f32) -> Vec<Shape> {
    let t = r * 0.2;
    match rng.random_range(0..4) {
        0 => vec![Shape::Ring((x, y), r, r * 0.65)],
        1 => vec![
            Shape::Capsule((x - r, y), (x + r, y), t),
            Shape::Capsule((x, y - r), (x, y + r), t),
        ],
        2 => {
            let d = r * std::f32::consts::FRAC_1_SQRT_2;
            vec![
                Shape::Capsule((x - d, y - d), (x + d, y + d), t),
                Shape::Capsule((x - d, y + d), (x + d, y - d), t),
            ]
        }
        _ => (0..4)
            .map(|k| {
                let x0 = x - r + k as f32 * r * 0.5;
                let up = if k % 2 == 0 { -r * 0.5 } else { r * 0.5 };
                Shape::Capsule((x0, y + up), (x0 + r * 0.5, y - up), t)
            })
            .collect(),
    }
}

/// Paints up to `n` distractors (radius 6–11% of the image side), each where none of its
/// pixels is within a pixel of the object; returns how many were painted.
pub fn distractors(canvas: &mut Canvas, rng: &mut ChaCha8Rng, n: usize) -> usize {
    let whole = Frame::image(canvas.size());
    let mut painted = 0;
    for _ in 0..n {
        let colour = distractor_colour(rng);
        let r = rng.random_range(0.06f32..0.11);
        for _ in 0..DISTRACTOR_TRIES {
            let (x, y) = (rng.random_range(r..1.0 - r), rng.random_range(r..1.0 - r));
            let shapes = distractor_shapes(rng, x, y, r);
            if shapes.iter().any(|s| canvas.near_object(whole, s, 1)) {
                continue;
            }
            for shape in &shapes {
                canvas.draw(whole, shape, &Paint::Solid(colour), 1.0, Layer::Distractor);
            }
            painted += 1;
            break;
        }
    }
    painted
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn distractor_colours_stay_away_from_every_fixed_part_colour() {
        // The fixed colours of objects.rs: pupils and wheels, eyes and sails, windows,
        // beaks and bird legs, the collar, the funnel, the headlight, the waves' two
        // bands, the mast, wheel hubs.
        let parts: [Colour; 11] = [
            [20.0, 20.0, 20.0],
            [245.0, 245.0, 240.0],
            [160.0, 215.0, 245.0],
            [245.0, 150.0, 30.0],
            [230.0, 30.0, 60.0],
            [205.0, 40.0, 30.0],
            [250.0, 235.0, 90.0],
            [200.0, 225.0, 250.0],
            [40.0, 100.0, 190.0],
            [90.0, 60.0, 30.0],
            [170.0, 170.0, 175.0],
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut nearest = f32::MAX;
        for _ in 0..20_000 {
            let c = distractor_colour(&mut rng);
            assert!(c.iter().all(|v| (0.0..=255.0).contains(v)), "{c:?}");
            for p in parts {
                let d = (0..3).map(|k| (c[k] - p[k]).powi(2)).sum::<f32>().sqrt();
                nearest = nearest.min(d);
            }
        }
        assert!(
            nearest > 45.0,
            "a distractor colour comes within {nearest} of a part"
        );
    }

    #[test]
    fn hsv_primaries() {
        assert_eq!(hsv(0.0, 1.0, 1.0), [255.0, 0.0, 0.0]);
        assert_eq!(hsv(120.0, 1.0, 1.0), [0.0, 255.0, 0.0]);
        assert_eq!(hsv(240.0, 1.0, 0.5), [0.0, 0.0, 127.5]);
    }
}
