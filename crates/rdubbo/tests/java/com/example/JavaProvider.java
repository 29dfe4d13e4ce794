package com.example;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.apache.dubbo.config.ApplicationConfig;
import org.apache.dubbo.config.ProtocolConfig;
import org.apache.dubbo.config.RegistryConfig;
import org.apache.dubbo.config.ServiceConfig;
import org.apache.dubbo.config.bootstrap.DubboBootstrap;
import org.apache.dubbo.rpc.RpcContext;

/**
 * Exports UserService over dubbo:// on 127.0.0.1:&lt;port&gt; and prints "READY &lt;port&gt;".
 *
 * <pre>
 * JavaProvider --port P [--registry zookeeper://127.0.0.1:Z] [--version V]
 *              [--register-mode interface|instance|all]   (Dubbo 3 only; ignored by 2.7)
 *              [--metadata-center]                        (use the registry as metadata center:
 *                                                          Dubbo 3 writes the interface-app mapping)
 *              [--exit-on-stdin-eof]                      (exit when standard input closes)
 *              [--protocol dubbo|tri]                     (default dubbo; tri: Dubbo 3 only)
 * </pre>
 */
public final class JavaProvider {
    private JavaProvider() {
    }

    /** The reference implementation every rdubbo peer is compared with. */
    public static final class UserServiceImpl implements UserService {
        @Override
        public User getUser(Long id) throws UserNotFoundException {
            if (id < 0) {
                throw new UserNotFoundException("no user " + id);
            }
            return Samples.user(id.intValue());
        }

        @Override
        public Long createUser(User u) {
            return (long) u.getName().length() * 1000 + u.getAge();
        }

        @Override
        public User echoUser(User u) {
            return u;
        }

        @Override
        public List<User> listUsers(int n) {
            List<User> users = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                users.add(Samples.plain("user" + i, i));
            }
            return users;
        }

        @Override
        public long inc(long x) {
            return x + 1;
        }

        @Override
        public Long inc(Long x) {
            return x == null ? -1L : x + 2;
        }

        @Override
        public Object echo(Object o) {
            return o;
        }

        @Override
        public String whoami() {
            // Same source for 2.7 and 3.3: getContext() reads the request attachments (3.x:
            // client then server attachment), getServerContext() writes the response ones.
            String caller = RpcContext.getContext().getAttachment("caller");
            RpcContext.getServerContext().setAttachment("served-by", "java");
            return caller;
        }

        @Override
        public Map<String, User> byName(List<User> users) {
            Map<String, User> out = new LinkedHashMap<>();
            for (User u : users) {
                out.put(u.getName(), u);
            }
            return out;
        }

        @Override
        public Level levelOf(User u) {
            return u.getLevel();
        }
    }

    public static void main(String[] args) throws Exception {
        int port = -1;
        String registry = null;
        String version = null;
        boolean metadataCenter = false;
        boolean exitOnStdinEof = false;
        String protocolName = "dubbo";
        for (int i = 0; i < args.length; i++) {
            switch (args[i]) {
                case "--port":
                    port = Integer.parseInt(args[++i]);
                    break;
                case "--registry":
                    registry = args[++i];
                    break;
                case "--metadata-center":
                    metadataCenter = true;
                    break;
                case "--version":
                    version = args[++i];
                    break;
                case "--exit-on-stdin-eof":
                    exitOnStdinEof = true;
                    break;
                case "--protocol":
                    protocolName = args[++i];
                    break;
                case "--register-mode":
                    System.setProperty("dubbo.application.register-mode", args[++i]);
                    break;
                default:
                    System.err.println("unknown argument: " + args[i]);
                    System.exit(2);
            }
        }
        if (port <= 0) {
            System.err.println("usage: JavaProvider --port P [--registry zookeeper://H:P] [--version V]"
                    + " [--register-mode interface|instance|all] [--metadata-center] [--exit-on-stdin-eof]");
            System.exit(2);
        }

        ApplicationConfig app = new ApplicationConfig("java-provider");
        app.setQosEnable(false);

        RegistryConfig reg;
        if (registry == null) {
            reg = new RegistryConfig("N/A");
        } else {
            reg = new RegistryConfig(registry);
            reg.setUseAsConfigCenter(false);
            // Dubbo 3 writes/reads the interface -> application mapping that application-level
            // discovery needs through the metadata center.
            reg.setUseAsMetadataCenter(metadataCenter);
        }

        ProtocolConfig protocol = new ProtocolConfig(protocolName, port);
        protocol.setHost("127.0.0.1");

        ServiceConfig<UserService> service = new ServiceConfig<>();
        service.setInterface(UserService.class);
        service.setRef(new UserServiceImpl());
        if (version != null) {
            service.setVersion(version);
        }

        try {
            DubboBootstrap.getInstance()
                    .application(app)
                    .registry(reg)
                    .protocol(protocol)
                    .service(service)
                    .start();
        } catch (Throwable t) {
            // Dubbo's non-daemon threads would keep a half-started JVM alive: leave now.
            System.out.println("FAILED " + t);
            t.printStackTrace(System.out);
            System.out.flush();
            Runtime.getRuntime().halt(1);
        }

        System.out.println("READY " + port);
        System.out.flush();
        if (exitOnStdinEof) {
            // A test harness keeps our stdin open; when the harness dies, stdin closes.
            while (System.in.read() >= 0) {
                // keep reading
            }
            Runtime.getRuntime().halt(0);
        }
        // Runs until killed (by PID).
        Thread.currentThread().join();
    }
}
