//! The feature set this test binary was built with is the one the run asked for: `scripts/test.sh`
//! tests the core alone without `alloc` (`CHOUETTE_EXPECT_ALLOC=0`), then the workspace, where
//! the agent turns `alloc` on for everyone (`CHOUETTE_EXPECT_ALLOC=1`). Cargo unifies features
//! across the packages it builds, so a run that meant to test without `alloc` could silently test
//! with it; this catches that. Without the variable it checks nothing.

#[test]
fn the_core_is_built_with_the_features_the_run_expects() {
    let built_with_alloc = cfg!(feature = "alloc");
    match std::env::var("CHOUETTE_EXPECT_ALLOC").as_deref() {
        Ok("0") => assert!(!built_with_alloc, "expected the core without `alloc`, built with it"),
        Ok("1") => assert!(built_with_alloc, "expected the core with `alloc`, built without it"),
        _ => {}
    }
}
