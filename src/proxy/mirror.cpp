// Shadow traffic: running mirror jobs through the exchange core. See mirror.hpp.
#include "mirror.hpp"

#include "exchange.hpp"
#include "h2_upstream.hpp"
#include "prediction_reading.hpp"
#include "upstream_pool.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>

namespace stagegate::proxy {

namespace {

task<void> mirror_once(worker& w, mirror_job& job, session_slot& slot, std::string& scratch) {
    const auto& model = *job.model;
    const auto& version = model.versions[job.version];
    const auto started = clock::now();
    body_capture capture{scratch, model.prediction ? model.prediction->max_body_bytes : 0};
    std::optional<metrics::upstream_failure> failure;
    unsigned status = 0;
    // As a client would see it: HTTP/1.1, not HEAD (HEAD is never mirrored).
    discard_sink nobody;
    request_context rc;
    rc.grpc = job.grpc;
    if (version.http2) {
        std::string_view upstream;
        auto out = co_await h2_exchange(
            nobody, w.h2(), exchange_args{job.head, job.body, rc, w, slot, model, version, &capture},
            upstream);
        status = recorded_status(rc, out);
        failure = out.failure;
        if (job.grpc) {
            // The status the candidate's client would have got, as for the calls it serves.
            w.shard().record_grpc(job.series, grpc_code_got(out));
        }
    } else {
        auto got = w.pool().try_idle(version);
        if (!got) {
            got = co_await w.pool().acquire(model, version, slot);
        }
        if (auto refused = acquire_failure(*got, model, version)) {
            status = static_cast<unsigned>(refused->problem.status);
            failure = refused->failure;
        } else {
            exchange_outcome out;
            co_await exchange_over(
                nobody, *got,
                exchange_args{job.head, job.body, rc, w, slot, model, version, &capture}, out);
            status = static_cast<unsigned>(out.status);
            failure = out.failure;
        }
    }
    if (failure) {
        w.shard().record_failure(job.series, *failure);
    }
    const auto micros =
        std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - started).count();
    w.shard().record(job.series, status, static_cast<std::uint64_t>(micros), job.unit);
    std::optional<predictions::prediction> p;
    if (model.prediction) {
        p = read_prediction(w, model, job.series, capture);
    }
    if (job.primary && p) {
        compare(w, job.series, *job.primary, *p);
    }
    if (scratch.capacity() > 64 * 1024) {
        std::string().swap(scratch);
    }
}

// Runs mirrors one after another until none wait: at most mirror_max_in_flight of these run
// per worker.
task<void> run_mirrors(worker& w, std::unique_ptr<mirror_job> job) {
    slot_guard guard(w, nullptr);
    std::string scratch;
    while (job) {
        co_await mirror_once(w, *job, guard.slot(), scratch);
        job.reset();
        auto& waiting = w.mirrors_waiting();
        if (!waiting.empty() && !w.draining()) {
            job = std::move(waiting.front());
            waiting.pop_front();
        }
    }
    --w.mirrors_in_flight();
}

}  // namespace

void drop_mirror(worker& w, mirror_job& job) {
    ++w.shard().predictions(job.series).mirrors_dropped;
}

void submit_mirror(worker& w, std::unique_ptr<mirror_job> job) {
    const auto& model = *job->model;
    if (w.draining()) {
        drop_mirror(w, *job);
        return;
    }
    if (w.mirrors_in_flight() < model.mirror_max_in_flight) {
        ++w.mirrors_in_flight();
        net::co_spawn(w.io().get_executor(), run_mirrors(w, std::move(job)), net::detached);
        return;
    }
    if (w.mirrors_waiting().size() < model.mirror_queue) {
        w.mirrors_waiting().push_back(std::move(job));
        return;
    }
    drop_mirror(w, *job);
}

bool draw_mirror(worker& w, const routing::model_route& model, std::uint32_t version,
                 const request_context& rc) {
    return model.mirror_bp > 0 && version == model.stable &&
           model.mirror_version != routing::no_version && !rc.head &&
           routing::point_from_u64(w.next_random()) < model.mirror_bp;
}

std::unique_ptr<mirror_job> mirror_of(const std::shared_ptr<const routing::route_snapshot>& routes,
                                      const routing::model_route& model, const client_request& req,
                                      const request_context& rc, std::string_view client_address,
                                      bool client_tls,
                                      std::optional<predictions::prediction> primary) {
    auto job = std::make_unique<mirror_job>();
    job->routes = routes;
    job->model = &model;
    job->version = model.mirror_version;
    job->series = model.mirror_series;
    // Marked as shadow traffic (as Envoy marks its mirrors): its answer is never seen by a
    // client.
    const forward_info info{client_address, client_tls, rc.id, rc.client_version, true};
    if (model.versions[model.mirror_version].http2) {
        serialize_h2_request_head(job->head, req, info, req.body().size());
    } else {
        serialize_request_head(job->head, req, info, req.body().size());
    }
    job->body.assign(req.body().data(), req.body().size());
    job->grpc = rc.grpc;
    job->primary = primary;
    return job;
}

}  // namespace stagegate::proxy
