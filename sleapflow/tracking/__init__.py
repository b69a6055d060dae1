"""Multi-animal tracking: candidates, features, scoring, matching, optical flow."""
