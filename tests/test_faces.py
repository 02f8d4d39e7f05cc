import numpy as np

from dfcourse.faces import Face, crop, face_track, box_iou, landmarks_in_crop, square_box


def test_square_box_margin_and_centre():
    sq = square_box([10, 20, 50, 100], margin=1.3)  # 40 x 80 box, centre (30, 60)
    assert sq[2] - sq[0] == sq[3] - sq[1] == 104
    assert (sq[0] + sq[2]) / 2 == 30 and (sq[1] + sq[3]) / 2 == 60


def test_crop_pads_outside_the_image():
    img = np.full((20, 20, 3), 200, np.uint8)
    out = crop(img, [-10, -10, 10, 10], size=20)
    assert out.shape == (20, 20, 3)
    assert out[:10, :10].max() == 0 and out[10:, 10:].min() == 200


def test_landmarks_follow_the_crop():
    lm = landmarks_in_crop([[30, 40]], [10, 20, 50, 60], size=80)
    assert np.allclose(lm, [[40, 40]])


def test_iou_hand_made():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == 50 / 150
    assert box_iou([0, 0, 1, 1], [2, 2, 3, 3]) == 0


def test_face_track_follows_one_face():
    def f(x, w):
        return Face(np.array([x, 0, x + w, w], np.float32), np.zeros((5, 2)), 0.99)
    big, small = f(0, 50), f(100, 20)
    frames = [[big, small], [f(3, 50), f(102, 20)], [], [f(101, 21), f(6, 49)]]
    track = face_track(frames)
    assert track[2] is None
    assert [t.box[0] for t in track if t is not None] == [0, 3, 6]


def test_mtcnn_finds_the_astronaut_batched_equals_single(detector, astronaut):
    single = detector.detect_one(astronaut)
    batched = detector.detect([astronaut, astronaut[:, ::-1].copy(), np.zeros_like(astronaut)])
    assert len(single) == 1 and single[0].prob > 0.9
    assert single[0].box.dtype == np.float32 and single[0].landmarks.shape == (5, 2)
    assert np.allclose(batched[0][0].box, single[0].box, atol=1)
    assert len(batched[1]) == 1 and batched[2] == []  # mirrored face found; black frame: none


def test_detector_downscales_large_frames(detector, astronaut):
    import cv2

    big = cv2.resize(astronaut, (2048, 2048))
    faces = detector.detect_one(big)
    ref = detector.detect_one(astronaut)[0].box * 4
    assert len(faces) == 1 and box_iou(faces[0].box, ref) > 0.8
