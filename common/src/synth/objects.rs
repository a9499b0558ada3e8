//! Drawing the world's objects from their parts (see [`super::world`] for the parts).
//!
//! Objects are drawn facing right in their own unit square (the [`Frame`] mirrors them);
//! every part is painted into the mask under its name (`Canvas::label`), the names of
//! `world`'s tables plus `body` for unnamed surfaces, so tests can check that each class
//! shows the parts the hierarchy says it has. Shapes and colours vary per image (pose, size of
//! parts, colour jitter) while each part stays recognisable at 64×64.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;

use super::canvas::{circle, ellipse, shade, Canvas, Colour, Frame, Paint, Shape};

const BLACK: Colour = [20.0, 20.0, 20.0];
const WHITE: Colour = [245.0, 245.0, 240.0];
const GLASS: Colour = [160.0, 215.0, 245.0];
const BEAK: Colour = [245.0, 150.0, 30.0];

/// A colour near `base`: brightness ×[0.85, 1.15] and ±12 per channel.
fn jitter(rng: &mut ChaCha8Rng, base: Colour) -> Colour {
    let f = rng.random_range(0.85f32..1.15);
    base.map(|v| (v * f + rng.random_range(-12.0f32..12.0)).clamp(0.0, 255.0))
}

/// The share of images whose main colour is their group's shared colour instead of
/// their own: siblings then differ only by their own parts, so a classifier cannot tell
/// them apart by colour alone.
const SHARED_COLOUR: f64 = 0.15;

/// The group colour shared by sibling classes (see [`SHARED_COLOUR`]).
const MAMMAL_GREY: Colour = [95.0, 95.0, 100.0];
const BIRD_WHITE: Colour = [235.0, 235.0, 228.0];
const WHEELED_RED: Colour = [200.0, 40.0, 45.0];
const WATERCRAFT_GREEN: Colour = [40.0, 95.0, 60.0];

/// A class's main colour: its own, or the one it shares with its siblings.
fn main_colour(rng: &mut ChaCha8Rng, own: Colour, shared: Colour) -> Colour {
    let base = if rng.random_bool(SHARED_COLOUR) {
        shared
    } else {
        own
    };
    jitter(rng, base)
}

/// Uniform in `[-a, a)`.
fn wobble(rng: &mut ChaCha8Rng, a: f32) -> f32 {
    rng.random_range(-a..a)
}

/// Draws leaf `label` (an index into `world::LEAVES`) into `frame`.
pub fn draw(canvas: &mut Canvas, frame: Frame, label: usize, rng: &mut ChaCha8Rng) {
    match label {
        0 => wheeled(canvas, frame, rng, Wheeled::Bus),
        1 => wheeled(canvas, frame, rng, Wheeled::Car),
        2 => mammal(canvas, frame, rng, Mammal::Cat),
        3 => mammal(canvas, frame, rng, Mammal::Dog),
        4 => bird(canvas, frame, rng, Bird::Duck),
        5 => bird(canvas, frame, rng, Bird::Parrot),
        6 => watercraft(canvas, frame, rng, Watercraft::Sailboat),
        7 => watercraft(canvas, frame, rng, Watercraft::Steamship),
        _ => unreachable!("label {label} is not a class of the world"),
    }
}

/// The animals' shared part: a white eye with a dark pupil looking forward.
fn eye(c: &mut Canvas, f: Frame, x: f32, y: f32, r: f32) {
    c.label("eye");
    c.solid(f, circle(x, y, r), WHITE);
    c.solid(f, circle(x + r * 0.3, y, r * 0.55), BLACK);
}

#[derive(Clone, Copy, PartialEq)]
enum Mammal {
    Cat,
    Dog,
}

/// Mammals: a furred body, head and four legs; cats add pointed ears and a long raised
/// tail, dogs a floppy ear, a snout with a nose and a short tail.
fn mammal(c: &mut Canvas, f: Frame, rng: &mut ChaCha8Rng, kind: Mammal) {
    let own = match kind {
        Mammal::Cat => [230.0, 135.0, 45.0],
        Mammal::Dog => [120.0, 78.0, 42.0],
    };
    let base = main_colour(rng, own, MAMMAL_GREY);
    let fur = Paint::Fur {
        base,
        cell: 0.075,
        seed: rng.random(),
    };
    let far_fur = Paint::Fur {
        base: shade(base, 0.75),
        cell: 0.075,
        seed: rng.random(),
    };
    let cy = 0.52 + wobble(rng, 0.04);
    let rx = 0.27 * rng.random_range(0.9f32..1.1);
    let ry = 0.13 * rng.random_range(0.9f32..1.15);
    let (hx, hy) = (0.76 + wobble(rng, 0.02), cy - 0.15 + wobble(rng, 0.03));
    // Tail, then the far legs, behind the body.
    match kind {
        Mammal::Cat => {
            c.label("long_tail");
            let (x1, y1) = (0.07 + wobble(rng, 0.03), cy - 0.12);
            let (x2, y2) = (0.09 + wobble(rng, 0.04), cy - 0.32 + wobble(rng, 0.04));
            c.part(f, Shape::Capsule((0.22, cy - 0.02), (x1, y1), 0.034), fur);
            c.part(f, Shape::Capsule((x1, y1), (x2, y2), 0.032), fur);
        }
        Mammal::Dog => {
            c.label("fur");
            let tip = (0.11 + wobble(rng, 0.03), cy - 0.14 + wobble(rng, 0.03));
            c.part(f, Shape::Capsule((0.21, cy - 0.04), tip, 0.032), fur);
        }
    }
    let swing = wobble(rng, 0.04);
    c.label("four_legs");
    // Far legs first (darker, swinging the other way), then the near ones.
    for (x, far) in [(0.33, true), (0.61, true), (0.26, false), (0.54, false)] {
        let (paint, s) = if far { (far_fur, -swing) } else { (fur, swing) };
        c.part(
            f,
            Shape::Capsule((x, cy + 0.04), (x + s, cy + 0.29), 0.036),
            paint,
        );
    }
    c.label("fur");
    c.part(
        f,
        Shape::Ellipse {
            cx: 0.45,
            cy,
            rx,
            ry,
            angle: wobble(rng, 0.08),
        },
        fur,
    );
    let hr = 0.11 * rng.random_range(0.92f32..1.08);
    if kind == Mammal::Cat {
        let ears = [
            [
                (hx - 0.11, hy - 0.02),
                (hx - 0.08, hy - 0.25),
                (hx + 0.01, hy - 0.08),
            ],
            [
                (hx - 0.01, hy - 0.08),
                (hx + 0.08, hy - 0.25),
                (hx + 0.11, hy - 0.02),
            ],
        ];
        c.label("pointed_ears");
        for ear in ears {
            c.part(f, Shape::Polygon(ear.to_vec()), fur);
        }
    }
    c.label("fur");
    c.part(f, circle(hx, hy, hr), fur);
    match kind {
        Mammal::Cat => {}
        Mammal::Dog => {
            // A bright collar where head meets body.
            let collar = Shape::Capsule((hx - 0.11, hy + 0.07), (hx - 0.02, hy + 0.15), 0.04);
            c.label("collar");
            c.solid(f, collar, [230.0, 30.0, 60.0]);
            c.label("snout");
            c.part(f, ellipse(hx + 0.13, hy + 0.05, 0.1, 0.06), fur);
            c.solid(f, circle(hx + 0.22, hy + 0.03, 0.032), BLACK);
            c.label("floppy_ear");
            c.solid(
                f,
                Shape::Ellipse {
                    cx: hx - 0.05,
                    cy: hy + 0.05,
                    rx: 0.05,
                    ry: 0.12,
                    angle: 0.35,
                },
                shade(base, 0.45),
            );
        }
    }
    eye(c, f, hx + 0.045, hy - 0.025, 0.038);
}

#[derive(Clone, Copy, PartialEq)]
enum Bird {
    Duck,
    Parrot,
}

/// Birds: a smooth body and head, a feathered wing, a beak and thin orange legs; ducks
/// add a flat bill and a short raised tail, parrots a hooked beak and long tail feathers
/// (and a blue wing).
fn bird(c: &mut Canvas, f: Frame, rng: &mut ChaCha8Rng, kind: Bird) {
    let (body, wing) = match kind {
        Bird::Duck => ([240.0, 205.0, 40.0], [175.0, 140.0, 40.0]),
        Bird::Parrot => ([215.0, 35.0, 35.0], [40.0, 110.0, 215.0]),
    };
    let body = main_colour(rng, body, BIRD_WHITE);
    let wing = jitter(rng, wing);
    let cy = 0.52 + wobble(rng, 0.04);
    let tilt = -0.25 + wobble(rng, 0.1);
    match kind {
        Bird::Parrot => {
            c.label("long_tail_feathers");
            let end = (0.07 + wobble(rng, 0.03), cy + 0.38 + wobble(rng, 0.03));
            c.solid(f, Shape::Capsule((0.3, cy + 0.05), end, 0.035), body);
            let end2 = (end.0 + 0.07, end.1 + 0.02);
            c.solid(f, Shape::Capsule((0.32, cy + 0.07), end2, 0.03), wing);
        }
        Bird::Duck => {
            c.label("short_tail");
            let tail = vec![
                (0.27, cy - 0.03),
                (0.1 + wobble(rng, 0.02), cy - 0.14 + wobble(rng, 0.03)),
                (0.22, cy + 0.06),
            ];
            c.solid(f, Shape::Polygon(tail), body);
        }
    }
    c.label("thin_legs");
    for (x0, x1) in [(0.41, 0.39), (0.5, 0.52)] {
        c.solid(
            f,
            Shape::Capsule((x0, cy + 0.1), (x1 + wobble(rng, 0.02), cy + 0.32), 0.02),
            BEAK,
        );
        c.solid(
            f,
            Shape::Capsule((x1 - 0.03, cy + 0.32), (x1 + 0.04, cy + 0.32), 0.018),
            BEAK,
        );
    }
    c.label("body");
    c.solid(
        f,
        Shape::Ellipse {
            cx: 0.46,
            cy,
            rx: 0.22 * rng.random_range(0.92f32..1.08),
            ry: 0.16,
            angle: tilt,
        },
        body,
    );
    c.label("feathered_wing");
    c.part(
        f,
        Shape::Ellipse {
            cx: 0.42,
            cy: cy + 0.01,
            rx: 0.17,
            ry: 0.085,
            angle: tilt - 0.15,
        },
        Paint::Feathers {
            base: wing,
            period: 0.06,
            axis: cy,
        },
    );
    let (hx, hy) = (0.68 + wobble(rng, 0.02), cy - 0.2 + wobble(rng, 0.02));
    c.label("body");
    c.solid(f, circle(hx, hy, 0.1), body);
    // The leaf's own beak shape, then the beak every bird has drawn over its base.
    match kind {
        Bird::Parrot => {
            c.label("hooked_beak");
            let hook = vec![
                (hx + 0.07, hy - 0.06),
                (hx + 0.16, hy - 0.04),
                (hx + 0.19, hy + 0.06),
                (hx + 0.14, hy + 0.03),
                (hx + 0.08, hy + 0.05),
            ];
            c.solid(f, Shape::Polygon(hook), BEAK);
        }
        Bird::Duck => {
            c.label("flat_bill");
            let bill = Shape::Rect(hx + 0.07, hy - 0.01, hx + 0.22, hy + 0.05);
            c.solid(f, bill, BEAK);
        }
    }
    c.label("beak");
    let beak = vec![
        (hx + 0.07, hy - 0.04),
        (hx + 0.14, hy),
        (hx + 0.07, hy + 0.04),
    ];
    c.solid(f, Shape::Polygon(beak), BEAK);
    eye(c, f, hx + 0.03, hy - 0.03, 0.034);
}

#[derive(Clone, Copy, PartialEq)]
enum Wheeled {
    Bus,
    Car,
}

/// A polygon grown by `d` away from its centroid (for dark outlines).
fn grown(points: &[(f32, f32)], d: f32) -> Vec<(f32, f32)> {
    let n = points.len() as f32;
    let (cx, cy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), &(x, y)| (a + x / n, b + y / n));
    points
        .iter()
        .map(|&(x, y)| {
            let (dx, dy) = (x - cx, y - cy);
            let len = (dx * dx + dy * dy).sqrt().max(1e-6);
            (x + dx / len * d, y + dy / len * d)
        })
        .collect()
}

/// An outlined rectangle painted as metal, labelled `part` inside its outline.
fn panel(c: &mut Canvas, f: Frame, rect: (f32, f32, f32, f32), base: Colour, part: &'static str) {
    let (x0, y0, x1, y1) = rect;
    const O: f32 = 0.03;
    c.label("dark_outline");
    c.solid(
        f,
        Shape::Rect(x0 - O, y0 - O, x1 + O, y1 + O),
        shade(base, 0.3),
    );
    let metal = Paint::Metal {
        base,
        top: y0,
        height: y1 - y0,
    };
    c.label(part);
    c.part(f, Shape::Rect(x0, y0, x1, y1), metal);
}

fn window(c: &mut Canvas, f: Frame, x0: f32, y0: f32, x1: f32, y1: f32) {
    c.label("windows");
    c.solid(f, Shape::Rect(x0, y0, x1, y1), GLASS);
}

/// Wheeled vehicles: an outlined metal body with windows on two black wheels with grey
/// hubs; cars are low with a cabin and a headlight, buses tall with a row of windows, a
/// door and a stripe.
fn wheeled(c: &mut Canvas, f: Frame, rng: &mut ChaCha8Rng, kind: Wheeled) {
    let dy = wobble(rng, 0.04);
    // Each body says where its wheels' axles are.
    let wheel_y = match kind {
        Wheeled::Car => {
            let base = main_colour(rng, [40.0, 80.0, 205.0], WHEELED_RED);
            let top = 0.33 + wobble(rng, 0.03);
            let cabin = [
                (0.26, 0.52 + dy),
                (0.36 + wobble(rng, 0.03), top + dy),
                (0.66 + wobble(rng, 0.03), top + dy),
                (0.77, 0.52 + dy),
            ];
            c.label("dark_outline");
            c.solid(f, Shape::Polygon(grown(&cabin, 0.025)), shade(base, 0.3));
            c.label("cabin");
            c.part(
                f,
                Shape::Polygon(cabin.to_vec()),
                Paint::Metal {
                    base,
                    top: top + dy,
                    height: 0.2,
                },
            );
            let ty = top + dy + 0.035;
            window(c, f, 0.36, ty, 0.5, 0.5 + dy);
            window(c, f, 0.53, ty, 0.67, 0.5 + dy);
            panel(c, f, (0.06, 0.5 + dy, 0.94, 0.69 + dy), base, "body");
            c.label("headlight");
            c.solid(
                f,
                Shape::Rect(0.88, 0.54 + dy, 0.94, 0.59 + dy),
                [250.0, 235.0, 90.0],
            );
            0.7 + dy
        }
        Wheeled::Bus => {
            let base = main_colour(rng, [40.0, 165.0, 70.0], WHEELED_RED);
            let top = 0.22 + wobble(rng, 0.03) + dy;
            panel(c, f, (0.05, top, 0.95, 0.72 + dy), base, "body");
            for k in 0..4 {
                let x = 0.1 + 0.17 * k as f32;
                window(c, f, x, top + 0.07, x + 0.12, top + 0.2);
            }
            c.label("stripe");
            c.solid(f, Shape::Rect(0.05, top + 0.26, 0.95, top + 0.31), WHITE);
            c.label("door");
            c.solid(
                f,
                Shape::Rect(0.8, top + 0.07, 0.9, 0.7 + dy),
                shade(base, 0.55),
            );
            window(c, f, 0.82, top + 0.09, 0.88, top + 0.2);
            0.73 + dy
        }
    };
    let r = 0.1 * rng.random_range(0.9f32..1.1);
    c.label("wheels");
    for x in [0.26, 0.74] {
        c.solid(f, circle(x, wheel_y, r), BLACK);
        c.solid(f, circle(x, wheel_y, r * 0.45), [170.0, 170.0, 175.0]);
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Watercraft {
    Sailboat,
    Steamship,
}

/// Watercraft: an outlined hull with portholes on waves; sailboats add a mast and two
/// white sails, steamships a white superstructure with windows and a red funnel.
fn watercraft(c: &mut Canvas, f: Frame, rng: &mut ChaCha8Rng, kind: Watercraft) {
    let dy = wobble(rng, 0.03);
    let hull_colour = match kind {
        Watercraft::Sailboat => main_colour(rng, [125.0, 50.0, 35.0], WATERCRAFT_GREEN),
        Watercraft::Steamship => main_colour(rng, [35.0, 45.0, 90.0], WATERCRAFT_GREEN),
    };
    let deck = 0.6 + dy;
    match kind {
        Watercraft::Sailboat => {
            let top = 0.1 + wobble(rng, 0.04);
            c.label("mast");
            c.solid(
                f,
                Shape::Capsule((0.5, deck), (0.5, top), 0.014),
                [90.0, 60.0, 30.0],
            );
            let reach = 0.84 + wobble(rng, 0.05);
            c.label("sails");
            let sail = vec![
                (0.53, top + 0.02),
                (0.53, deck - 0.03),
                (reach, deck - 0.03),
            ];
            c.solid(f, Shape::Polygon(sail), WHITE);
            let jib = vec![(0.47, top + 0.08), (0.47, deck - 0.03), (0.2, deck - 0.03)];
            c.solid(f, Shape::Polygon(jib), shade(WHITE, 0.88));
        }
        Watercraft::Steamship => {
            let fx = 0.5 + wobble(rng, 0.04);
            let ftop = 0.22 + wobble(rng, 0.04);
            c.label("funnel");
            c.solid(
                f,
                Shape::Rect(fx, ftop, fx + 0.12, deck - 0.15),
                [205.0, 40.0, 30.0],
            );
            c.solid(f, Shape::Rect(fx, ftop, fx + 0.12, ftop + 0.05), BLACK);
            panel(
                c,
                f,
                (0.26, deck - 0.17, 0.76, deck),
                WHITE,
                "superstructure",
            );
            for k in 0..4 {
                let x = 0.3 + 0.115 * k as f32;
                window(c, f, x, deck - 0.12, x + 0.07, deck - 0.06);
            }
        }
    }
    let hull = [
        (0.06, deck),
        (0.94, deck),
        (0.8, deck + 0.2),
        (0.2, deck + 0.2),
    ];
    c.label("dark_outline");
    c.solid(
        f,
        Shape::Polygon(grown(&hull, 0.025)),
        shade(hull_colour, 0.3),
    );
    c.label("hull");
    c.solid(f, Shape::Polygon(hull.to_vec()), hull_colour);
    c.solid(
        f,
        Shape::Rect(0.09, deck + 0.015, 0.91, deck + 0.045),
        shade(WHITE, 0.9),
    );
    for k in 0..3 {
        let x = 0.32 + 0.14 * k as f32;
        window(c, f, x, deck + 0.08, x + 0.06, deck + 0.13);
    }
    // Waves: a light crest over a blue band below the hull, part of the object.
    let phase = rng.random_range(0.0f32..std::f32::consts::TAU);
    c.label("waves");
    for (offset, colour) in [(0.0, [200.0, 225.0, 250.0]), (0.025, [40.0, 100.0, 190.0])] {
        let mut band: Vec<(f32, f32)> = (0..=24)
            .map(|i| {
                let u = 0.02 + 0.96 * i as f32 / 24.0;
                let wave = 0.025 * (u * std::f32::consts::TAU * 3.0 + phase).sin();
                (u, deck + 0.2 + offset + wave)
            })
            .collect();
        band.push((0.98, deck + 0.31));
        band.push((0.02, deck + 0.31));
        c.solid(f, Shape::Polygon(band), colour);
    }
}
