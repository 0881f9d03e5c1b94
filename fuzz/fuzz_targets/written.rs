#![no_main]

// `same_batch_at` compares the client's batch with what the leader's log holds at an offset.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fairlead_fuzz::targets::contain_panics();
    fairlead_fuzz::targets::written(data, fairlead::testing::same_batch_at)
});
