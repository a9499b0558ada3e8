//! Backgrounds and clutter: what surrounds an object without being any class's part.
//!
//! Backgrounds are muted two-colour gradients in a random direction with soft blobs;
//! clutter is a few half-transparent distractors (rings, crosses, diamonds, zigzags,
//! rotated squares) in random colours. None of them reuses a class part: no filled dark
//! discs (wheels), no white discs with pupils (eyes), no pale-blue rectangles (windows),
//! no fur or feather texture. Clutter is drawn behind the object and is not in its mask.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::canvas::{Canvas, Colour, Frame, Paint, Shape};

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
        canvas.draw(whole, &blob, &Paint::Solid(muted(rng)), 0.3, false);
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
            canvas.draw(whole, shape, &Paint::Solid(colour), alpha, false);
        }
    }
}
