#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fairlead_fuzz::targets::contain_panics();
    fairlead_fuzz::targets::frame(data)
});
