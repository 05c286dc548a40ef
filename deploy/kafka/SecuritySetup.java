// Users and ACLs of the local broker's SASL_SSL listener (kafka.sh runs it with the
// broker's jars as a single-file program: nothing is compiled into the repo).
//
//   java -cp 'libs/*' SecuritySetup.java <plaintext bootstrap> <secrets dir> <topic prefix> <app id>
//
// Idempotent. SCRAM users missing on the broker (storage formatted before the secure
// listener existed) are added from <secrets dir>/<user>.password; the ACLs of the
// `worker` and `downstream` principals for one deployment (topic prefix, app id) are
// created. It talks to the PLAINTEXT listener, whose ANONYMOUS principal is a super user
// on the local broker only.
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.common.acl.AccessControlEntry;
import org.apache.kafka.common.acl.AclBinding;
import org.apache.kafka.common.acl.AclOperation;
import org.apache.kafka.common.acl.AclPermissionType;
import org.apache.kafka.common.resource.PatternType;
import org.apache.kafka.common.resource.ResourcePattern;
import org.apache.kafka.common.resource.ResourceType;

public class SecuritySetup {
    static final String[] USERS = {"admin", "worker", "downstream"};
    static final String[] INPUTS = {"sms.sent", "sms.delivery", "sms.reply", "sms.click"};
    static final String[] METRICS = {"campaign-analytics.campaign-metrics",
                                     "campaign-analytics.campaign-windows"};

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], prefix = args[2], appId = args[3];
        Path secrets = Path.of(args[1]);
        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
        try (Admin admin = Admin.create(props)) {
            Set<String> known = admin.describeUserScramCredentials().all().get().keySet();
            List<UserScramCredentialAlteration> missing = new ArrayList<>();
            for (String user : USERS) {
                if (known.contains(user)) continue;
                String password = Files.readString(secrets.resolve(user + ".password")).trim();
                missing.add(new UserScramCredentialUpsertion(
                    user, new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), password));
            }
            if (!missing.isEmpty()) {
                admin.alterUserScramCredentials(missing).all().get();
                System.err.println("SecuritySetup: added SCRAM user(s) " + missing.stream()
                    .map(UserScramCredentialAlteration::user).collect(Collectors.joining(", ")));
            }
            List<AclBinding> acls = new ArrayList<>();
            String worker = "User:worker", downstream = "User:downstream";
            for (String input : INPUTS) {
                acls.add(allow(ResourceType.TOPIC, prefix + input, PatternType.LITERAL, worker, AclOperation.READ));
                acls.add(allow(ResourceType.TOPIC, prefix + input, PatternType.LITERAL, worker, AclOperation.DESCRIBE));
            }
            // Its dead-letter and metric topics, its internal topics and changelogs, and
            // its consumer groups (the app id, the sinks' <app id>-<sink>).
            acls.add(allow(ResourceType.TOPIC, prefix + "campaign-analytics.", PatternType.PREFIXED, worker, AclOperation.ALL));
            acls.add(allow(ResourceType.TOPIC, appId + "-", PatternType.PREFIXED, worker, AclOperation.ALL));
            acls.add(allow(ResourceType.GROUP, appId, PatternType.PREFIXED, worker, AclOperation.ALL));
            for (String metrics : METRICS) {
                acls.add(allow(ResourceType.TOPIC, prefix + metrics, PatternType.LITERAL, downstream, AclOperation.READ));
                acls.add(allow(ResourceType.TOPIC, prefix + metrics, PatternType.LITERAL, downstream, AclOperation.DESCRIBE));
            }
            acls.add(allow(ResourceType.GROUP, "downstream", PatternType.PREFIXED, downstream, AclOperation.READ));
            admin.createAcls(acls).all().get();
            System.err.println("SecuritySetup: " + acls.size() + " ACL(s) for topic prefix '"
                + prefix + "' and app id '" + appId + "'");
        }
    }

    static AclBinding allow(ResourceType type, String name, PatternType pattern, String principal,
                            AclOperation operation) {
        return new AclBinding(new ResourcePattern(type, name, pattern),
            new AccessControlEntry(principal, "*", operation, AclPermissionType.ALLOW));
    }
}
