import numpy as np
import pytest

from lightning_skel.skeleton import GAIT16_JOINTS, get_layout, list_layouts

LAYOUTS = ["ntu25", "kinect20", "openpose18", "coco17", "gait16"]


def test_registered_layouts():
    assert set(LAYOUTS) <= set(list_layouts())


def test_unknown_layout_lists_known_names():
    with pytest.raises(KeyError, match="known layouts: .*ntu25"):
        get_layout("ntu26")


@pytest.mark.parametrize("name", LAYOUTS)
def test_bones_form_one_tree_over_all_joints(name):
    lay = get_layout(name)
    v = lay.num_joints
    assert len(lay.joint_names) == v == len(set(lay.joint_names))
    assert len(lay.bones) == v - 1
    children = [c for c, _ in lay.bones]
    assert sorted(children) == sorted(set(range(v)) - {lay.root})
    # connected: walking parents from every joint reaches the root
    parent = dict(lay.bones)
    for j in range(v):
        k, steps = j, 0
        while k != lay.root:
            k = parent[k]
            steps += 1
            assert steps <= v
    # a tree has V-1 edges and is connected, so the symmetric adjacency has rank-deficient Laplacian of nullity 1
    a = lay.adjacency
    lap = np.diag(a.sum(1)) - a
    assert np.sum(np.linalg.eigvalsh(lap) < 1e-6) == 1


@pytest.mark.parametrize("name", LAYOUTS)
def test_triplets_derived_from_tree(name):
    lay = get_layout(name)
    expected = sum(len(lay.children(j)) for j in range(lay.num_joints) if j != lay.root)
    assert len(lay.triplets) == expected
    parent = dict(lay.bones)
    for p, j, c in lay.triplets:
        assert parent[j] == p and parent[c] == j


@pytest.mark.parametrize("name", LAYOUTS)
def test_gait16_map_is_a_convex_combination(name):
    w = get_layout(name).gait16_matrix
    assert w.shape == (len(GAIT16_JOINTS), get_layout(name).num_joints)
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6)
    assert (w >= 0).all()


def test_ntu25_bones_pinned():
    # 1-based (child, parent) pairs of the Kinect v2 tree: hand tips attach to the hands, thumbs to the wrists.
    one_based = [
        (2, 1), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10), (12, 11),
        (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (21, 2),
        (22, 8), (23, 7), (24, 12), (25, 11),
    ]  # fmt: skip
    assert get_layout("ntu25").bones == tuple((c - 1, p - 1) for c, p in one_based)
    assert get_layout("ntu25").root == 0


def test_other_trees_pinned():
    assert get_layout("kinect20").bones == (
        (1, 0), (2, 1), (3, 2), (4, 2), (5, 4), (6, 5), (7, 6), (8, 2), (9, 8), (10, 9), (11, 10),
        (12, 0), (13, 12), (14, 13), (15, 14), (16, 0), (17, 16), (18, 17), (19, 18),
    )  # fmt: skip
    # ST-GCN's openpose edge list, as (child, parent) rooted at the neck
    assert set(get_layout("openpose18").bones) == {
        (4, 3), (3, 2), (7, 6), (6, 5), (13, 12), (12, 11), (10, 9), (9, 8), (11, 5), (8, 2),
        (5, 1), (2, 1), (0, 1), (15, 0), (14, 0), (17, 15), (16, 14),
    }  # fmt: skip
    assert get_layout("gait16").joint_names == GAIT16_JOINTS


@pytest.mark.parametrize("name", LAYOUTS)
def test_rest_pose_is_a_standing_body(name):
    lay = get_layout(name)
    g = lay.gait16_matrix @ lay.rest_array  # (16, 3)
    idx = {n: i for i, n in enumerate(GAIT16_JOINTS)}
    assert (
        g[idx["head"], 1]
        > g[idx["neck"], 1]
        > g[idx["root"], 1]
        > g[idx["left_knee"], 1]
        > g[idx["left_foot"], 1]
    )
    assert g[idx["left_shoulder"], 0] > 0 > g[idx["right_shoulder"], 0]
