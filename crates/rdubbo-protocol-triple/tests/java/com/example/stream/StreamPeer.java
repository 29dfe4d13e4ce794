package com.example.stream;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.dubbo.common.stream.StreamObserver;
import org.apache.dubbo.config.ApplicationConfig;
import org.apache.dubbo.config.ProtocolConfig;
import org.apache.dubbo.config.ReferenceConfig;
import org.apache.dubbo.config.RegistryConfig;
import org.apache.dubbo.config.ServiceConfig;
import org.apache.dubbo.config.bootstrap.DubboBootstrap;

/**
 * Java 3.3 on both ends of {@link Greeter}'s streams.
 *
 * <pre>
 * StreamPeer provider P      serves Greeter on tri port P; prints "READY P"; exits when stdin closes
 * StreamPeer consumer URL    calls both methods; prints "greetStream a,b ERR" / "chat A,B ERR", "DONE"
 * </pre>
 */
public final class StreamPeer {
    private StreamPeer() {
    }

    /** Greets twice; upper-cases what it is sent. */
    static final class GreeterImpl implements Greeter {
        @Override
        public void greetStream(String name, StreamObserver<String> answers) {
            answers.onNext("hello " + name);
            answers.onNext("bonjour " + name);
            answers.onCompleted();
        }

        @Override
        public StreamObserver<String> chat(StreamObserver<String> answers) {
            return new StreamObserver<String>() {
                @Override
                public void onNext(String data) {
                    answers.onNext(data.toUpperCase());
                }

                @Override
                public void onError(Throwable throwable) {
                    System.out.println("chat-error " + throwable);
                }

                @Override
                public void onCompleted() {
                    answers.onCompleted();
                }
            };
        }
    }

    /** Collects a stream's answers. */
    static final class Collector implements StreamObserver<String> {
        final List<String> got = Collections.synchronizedList(new ArrayList<>());
        final CountDownLatch done = new CountDownLatch(1);
        final AtomicReference<Throwable> error = new AtomicReference<>();

        @Override
        public void onNext(String data) {
            got.add(data);
        }

        @Override
        public void onError(Throwable t) {
            error.set(t);
            done.countDown();
        }

        @Override
        public void onCompleted() {
            done.countDown();
        }

        String line() throws InterruptedException {
            boolean ended = done.await(20, TimeUnit.SECONDS);
            return String.join(",", got) + " " + (ended ? String.valueOf(error.get()) : "TIMEOUT");
        }
    }

    public static void main(String[] args) throws Exception {
        ApplicationConfig app = new ApplicationConfig("java-stream-peer");
        app.setQosEnable(false);
        try {
            if (args[0].equals("provider")) {
                int port = Integer.parseInt(args[1]);
                ProtocolConfig protocol = new ProtocolConfig("tri", port);
                protocol.setHost("127.0.0.1");
                ServiceConfig<Greeter> service = new ServiceConfig<>();
                service.setInterface(Greeter.class);
                service.setRef(new GreeterImpl());
                DubboBootstrap.getInstance().application(app).registry(new RegistryConfig("N/A"))
                        .protocol(protocol).service(service).start();
                System.out.println("READY " + port);
                System.out.flush();
                while (System.in.read() >= 0) {
                    // until the test closes our stdin
                }
                Runtime.getRuntime().halt(0);
            }
            ReferenceConfig<Greeter> ref = new ReferenceConfig<>();
            ref.setInterface(Greeter.class);
            ref.setUrl(args[1]);
            ref.setTimeout(10000);
            ref.setRetries(0);
            DubboBootstrap.getInstance().application(app).registry(new RegistryConfig("N/A"))
                    .reference(ref).start();
            Greeter greeter = ref.get();
            Collector server = new Collector();
            greeter.greetStream("ann", server);
            System.out.println("greetStream " + server.line());
            Collector bidi = new Collector();
            StreamObserver<String> requests = greeter.chat(bidi);
            requests.onNext("a");
            requests.onNext("b");
            requests.onCompleted();
            System.out.println("chat " + bidi.line());
            System.out.println("DONE");
        } catch (Throwable t) {
            System.out.println("FAILED " + t);
            t.printStackTrace(System.out);
        }
        System.out.flush();
        Runtime.getRuntime().halt(0);
    }
}
