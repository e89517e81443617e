// One second of a worker's telemetry summed up over its GPUs, exactly as the service keeps its
// history (`TelemetrySample::of` in orchestrator/src/service/history.rs): the hottest GPU, the
// mean utilisation, memory and power summed; the host's CPU and memory for a GPU-less worker.

export function sampleOf(telemetry, rttUs, unixMs) {
  const rtt = rttUs === null || rttUs === undefined ? null : rttUs / 1000;
  const gpus = telemetry.gpus || [];
  if (!gpus.length) {
    return {
      unix_ms: unixMs,
      temperature_c: null,
      utilization_pct: telemetry.cpu_pct,
      memory_used_mib: telemetry.memory_used_mib,
      memory_total_mib: telemetry.memory_total_mib,
      power_w: null,
      rtt_ms: rtt,
    };
  }
  return {
    unix_ms: unixMs,
    temperature_c: Math.max(...gpus.map((g) => g.temperature_c)),
    utilization_pct: gpus.reduce((a, g) => a + g.utilization_pct, 0) / gpus.length,
    memory_used_mib: gpus.reduce((a, g) => a + g.memory_used_mib, 0),
    memory_total_mib: gpus.reduce((a, g) => a + g.memory_total_mib, 0),
    power_w: gpus.reduce((a, g) => a + g.power_w, 0),
    rtt_ms: rtt,
  };
}
